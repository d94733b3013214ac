"""HTTP only: request parsing, response formatting, error mapping."""
