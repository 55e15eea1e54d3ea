"""close2d365: migrate a Close CRM org to Microsoft Dynamics 365 Sales as a Dagster asset graph."""
