"""Passwords, tokens, the per-RPC access policy and the check the interceptor runs."""
