"""The web portal: trial signup, tenant self-service and the REST API."""
