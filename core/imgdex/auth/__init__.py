"""Access control: users, roles, sessions, API keys, CSRF, rate limits and headers.

- `policy`: roles and scopes, and the `Principal` a request acts as;
- `passwords`: argon2id hashes; `tokens`: session tokens and API keys (hashed with SHA-256);
- `ratelimit`: login attempts per account and per client address;
- `service`: `AuthService`, the blocking operations the API and the CLI share;
- `middleware`: who is asking (bearer key, admin token or session cookie), CSRF for
  cookie-authenticated requests, and security headers on HTML responses;
- `guards`: `require(scope)` for route handlers, `is_admin` for checks inside one.
"""

from __future__ import annotations

from imgdex.auth.guards import is_admin, principal_of, require
from imgdex.auth.policy import ROLES, SCOPES, Principal

__all__ = ["ROLES", "SCOPES", "Principal", "is_admin", "principal_of", "require"]
