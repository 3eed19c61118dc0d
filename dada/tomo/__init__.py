"""Tomography preview: preprocessing (prep.py), gridding FBP (fbp.py) and the /tomo routes (routes.py)."""
