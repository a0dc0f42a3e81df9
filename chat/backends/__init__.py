"""Model backends behind one protocol (see base.py) and the registry that routes to them."""
