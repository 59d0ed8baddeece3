"""Amazon S3 writes (the Bedrock data plane) on the gateway core."""
