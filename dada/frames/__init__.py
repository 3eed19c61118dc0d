"""Raw frames: /frame, /sum, /composite (routes.py) and the listings /browse, /meta (listing.py)."""
