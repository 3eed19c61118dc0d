// Relative asset URLs: the built app works from any folder it is served from.
export default { base: './', build: { chunkSizeWarningLimit: 8000 } };
