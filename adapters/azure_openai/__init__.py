"""Azure OpenAI: the provider spec (classic api-version routes and /openai/v1 routes)."""
