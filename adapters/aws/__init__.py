"""AWS pieces shared by the S3 and Bedrock adapters: SigV4 (botocore's signer), aws-chunked bodies, regions."""
