"""The routes of ``medadapt serve``, one router a resource: :mod:`.system` (health, whoami), :mod:`.volumes`,
:mod:`.jobs`, :mod:`.adapters`; each module lists its routes. Every route but ``/v1/health`` needs
``Authorization: Bearer <token>`` when the server has tokens; a token sees only what it uploaded or made.

Answers are JSON unless said otherwise; errors are ``{"detail": message}`` naming the field.

Whatever follows ``/v1/volumes/``, ``/v1/jobs/`` or ``/v1/adapters/`` reaches the route as the ID (slashes and
newlines included) and is refused there with 400 unless it is an ID the server could have made; an ID of
another token's answers 404, as an absent one does.
"""
