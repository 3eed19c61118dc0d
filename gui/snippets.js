// Ready-to-paste ways to get the same result outside the browser.

function filename(url) {
  const parts = new URL(url).pathname.split("/").filter(Boolean).map(decodeURIComponent);
  return `${parts[0]}_${parts[parts.length - 1]}`.replace(/[^\w.-]/g, "_");
}

export function snippets(absolute, fmt) {
  const file = filename(absolute);
  const json = absolute.replace(/\.\w+(\?|$)/, ".json$1");
  const mat = absolute.replace(/\.\w+(\?|$)/, ".mat$1");
  const npy = absolute.replace(/\.\w+(\?|$)/, ".npy$1");
  return {
    curl: `curl -fo ${file} '${absolute}'`,
    python: fmt === "npy" || fmt === "png" || fmt === "json"
      ? `import io, urllib.request\nimport numpy as np\n\nurl = "${npy}"\nwith urllib.request.urlopen(url) as r:\n    data = np.load(io.BytesIO(r.read()))`
      : `import urllib.request\n\nurllib.request.urlretrieve("${absolute}", "${file}")`,
    matlab: [
      "% Matlab and GNU Octave: the arrays and their parameters as a struct",
      `doc = webread('${json}');`,
      "% Octave's webread gives text: doc = jsondecode(webread(...));",
      "",
      "% as a .mat file (every array of the answer)",
      `websave('${file.replace(/\.\w+$/, ".mat")}', '${mat}');   % Matlab`,
      `urlwrite('${mat}', '${file.replace(/\.\w+$/, ".mat")}');  % Octave`,
      `s = load('${file.replace(/\.\w+$/, ".mat")}');`,
    ].join("\n"),
  };
}
