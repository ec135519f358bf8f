"""The dashboard (`modelyard ui`): read-only pages over what modelyard records (app.py)."""
