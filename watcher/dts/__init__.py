"""The DTS OpenAPI side: request signing, credentials, the HTTP client and response models."""
