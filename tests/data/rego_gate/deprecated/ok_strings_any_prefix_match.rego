package gate

allow if strings.any_prefix_match(input.path, ["/api", "/health"])
