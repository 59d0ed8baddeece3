"""Google Cloud Storage on the gateway core: the upload surface where Vertex AI training data goes."""
