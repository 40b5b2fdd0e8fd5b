"""A token-auth upstream (docker-registry with `auth: token`) behind the mirror."""
