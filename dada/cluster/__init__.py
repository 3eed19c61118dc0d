"""The cluster: the front cuts a scan into blocks (blocks.py), asks the result cache, sends the missing
blocks as job URLs to nodes (nodes.py, ring.py) and glues their partial results (front.py); a node
answers job URLs (node.py); the embedded default starts local nodes itself (local.py)."""
