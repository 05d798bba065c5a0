"""Code used by both the device agent and the cloud: schemas, protocol, feature encoding, backends."""
