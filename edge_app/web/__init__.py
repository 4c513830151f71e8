"""The web UI and API: the Bottle app, its route groups, templates and static files."""
