"""hello-store: an llmasos app package."""
