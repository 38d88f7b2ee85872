"""Routes of a client protocol, each module adding its own to the app (`add_routes`)."""
