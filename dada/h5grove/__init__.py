"""The h5grove API under ``/h5grove/``: what h5web (and jupyterlab-h5web, the VS Code extension…) speaks.

A thin aiohttp adapter on the ``h5grove`` package's own content and encoding functions
(``h5grove.content``, ``h5grove.encoders``): dada adds only what every one of its routes has — files
named relative to the data root and confined to it (links and virtual datasets included), tokens,
JSON errors, byte budgets checked before reading, blocking work in the worker pool — and a virtual
NeXus file per scan (``{scan}.dada``) holding its analyses as NXdata groups.
"""
