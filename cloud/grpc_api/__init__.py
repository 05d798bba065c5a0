"""The cloud API's Open Inference Protocol gRPC front end: translates gRPC calls to
cloud.dataplane (the same DataPlane the REST app uses) and errors to gRPC status codes."""
