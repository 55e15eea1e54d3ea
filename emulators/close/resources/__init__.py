"""Handlers of the Close API resources; each module registers its routes in `ROUTES`."""
