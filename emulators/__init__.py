"""Local stand-ins for the Close REST API and the Dataverse Web API, seeded from a synthetic Close org."""
