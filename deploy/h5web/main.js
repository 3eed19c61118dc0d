// h5web on a dada daemon: ?file= names a file below the data root (or {scan}.dada, a scan's analyses),
// ?path= the entity to open first. The daemon's h5grove API is ?url=, else VITE_DADA_URL at build time,
// else /h5grove on this page's own origin.
import '@h5web/app/styles.css';

import { App, H5GroveProvider } from '@h5web/app';
import { createElement as h, StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

const query = new URLSearchParams(window.location.search);
const url = query.get('url') || import.meta.env.VITE_DADA_URL || `${window.location.origin}/h5grove`;
const file = query.get('file');

const root = createRoot(document.getElementById('root'));
if (!file) {
  root.render(h('p', { style: { padding: '1em' } }, 'Name a file: ?file=eiger/u16/scan_0001_master.h5 or ?file=eiger/u16/scan_0001.dada'));
} else {
  root.render(
    h(StrictMode, null,
      h(H5GroveProvider, { url, filepath: file },
        h(App, { initialPath: query.get('path') || undefined }))),
  );
}
