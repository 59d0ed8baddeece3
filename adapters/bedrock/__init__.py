"""Amazon Bedrock model customization (control plane) on the gateway core."""
