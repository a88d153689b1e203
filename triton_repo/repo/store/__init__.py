"""Object storage as a repository: the S3 client, the layout of a versioned bucket, its manifest,
publishing into it, rolling it back, and what a local repository sends to it."""
