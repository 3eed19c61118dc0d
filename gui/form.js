// Forms generated from a route's parameter schemas in /api: the GUI knows no parameter by name.
// A view keeps only the parameters that differ from the server's defaults, so URLs stay short.

function defaultText(schema) {
  return schema.default === undefined || schema.default === null ? "" : String(schema.default);
}

function group(name, schema) {
  if (schema["x-presentation"]) return "Display";
  const dot = name.indexOf(".");
  return dot > 0 ? name.slice(0, dot) : "Parameters";
}

function control(name, schema, value) {
  const id = `p-${name}`;
  const def = defaultText(schema);
  if (schema.enum) {
    const sel = document.createElement("select");
    for (const option of schema.enum) sel.add(new Option(option, option));
    sel.value = value !== undefined ? value : def;
    return Object.assign(sel, { id, name });
  }
  if (schema["x-choices"]) {
    const box = document.createElement("div");
    box.className = "choices";
    box.id = id;
    box.setAttribute("role", "group");
    const chosen = (value !== undefined ? value : def).split(",");
    for (const option of schema["x-choices"]) {
      const label = document.createElement("label");
      const cb = Object.assign(document.createElement("input"), { type: "checkbox", value: option, name });
      cb.checked = chosen.includes(option);
      label.append(cb, " " + option);
      box.append(label);
    }
    return box;
  }
  if (schema.type === "boolean") {
    const cb = Object.assign(document.createElement("input"), { type: "checkbox", id, name });
    cb.checked = (value !== undefined ? value : def) === "true";
    return cb;
  }
  const input = Object.assign(document.createElement("input"), { type: "text", id, name });
  input.value = value !== undefined ? value : "";
  input.placeholder = def || (schema.example ? `e.g. ${schema.example}` : "");
  if (schema.type === "number" || schema.type === "integer") input.inputMode = "decimal";
  return input;
}

function hint(schema) {
  const parts = [schema.description];
  if (schema["x-unit"]) parts.push(`[${schema["x-unit"]}]`);
  if (schema["x-syntax"]) parts.push(schema["x-syntax"]);
  return parts.join(" ");
}

/**
 * Fill `container` with one field per parameter of `ep` (those in `skip` left out), set from
 * `values`. `onChange(name)` fires when the user changes one.
 */
export function buildForm(container, ep, values, onChange, skip = []) {
  container.replaceChildren();
  const sets = new Map();
  for (const [name, schema] of Object.entries(ep.parameters)) {
    if (skip.includes(name)) continue;
    const g = group(name, schema);
    if (!sets.has(g)) {
      const fs = document.createElement("fieldset");
      fs.append(Object.assign(document.createElement("legend"), { textContent: g }));
      sets.set(g, fs);
    }
    const row = document.createElement("div");
    row.className = "field";
    row.dataset.param = name;
    const label = Object.assign(document.createElement("label"), { textContent: name });
    const ctl = control(name, schema, values[name]);
    label.htmlFor = ctl.id;
    ctl.title = hint(schema);
    const note = Object.assign(document.createElement("span"), { className: "hint", textContent: hint(schema) });
    const err = Object.assign(document.createElement("span"), { className: "err", id: `err-${name}` });
    err.setAttribute("role", "alert");
    ctl.setAttribute("aria-describedby", err.id);
    row.append(label, ctl, note, err);
    sets.get(g).append(row);
    const fire = () => onChange(name);
    ctl.addEventListener("change", fire);
    if (ctl.tagName === "INPUT" && ctl.type === "text") ctl.addEventListener("keydown", (e) => e.key === "Enter" && fire());
  }
  const order = [...sets.keys()].sort((a, b) => (a === "Display") - (b === "Display"));
  for (const g of order) container.append(sets.get(g));
}

/** The parameters the form's fields set, leaving out what equals the server's default. */
export function readForm(container, ep) {
  const out = {};
  for (const row of container.querySelectorAll(".field")) {
    const name = row.dataset.param;
    const schema = ep.parameters[name];
    const def = defaultText(schema);
    let v;
    if (schema["x-choices"]) {
      v = [...row.querySelectorAll("input:checked")].map((cb) => cb.value).join(",");
    } else if (schema.type === "boolean") {
      v = row.querySelector("input").checked ? "true" : "false";
    } else {
      v = row.querySelector("input, select").value.trim();
    }
    if (v !== "" && v !== def) out[name] = v;
  }
  return out;
}

/** Put one value into the form (e.g. a radius dragged on the frame). */
export function setField(container, name, value) {
  const ctl = container.querySelector(`[data-param="${CSS.escape(name)}"] input, [data-param="${CSS.escape(name)}"] select`);
  if (ctl) ctl.value = value;
}

/** Show the server's 400 message at its parameter's field (or nowhere: the caller shows it). */
export function showErrors(container, body) {
  for (const el of container.querySelectorAll(".err")) el.textContent = "";
  for (const el of container.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const name = body && body.parameter;
  if (!name) return false;
  const row = container.querySelector(`[data-param="${CSS.escape(name)}"]`);
  if (!row) return false;
  row.querySelector(".err").textContent = body.message + (body.allowed ? ` (allowed: ${body.allowed})` : "");
  const ctl = row.querySelector("input, select, .choices");
  ctl.setAttribute("aria-invalid", "true");
  return true;
}
