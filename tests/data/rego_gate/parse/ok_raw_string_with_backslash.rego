package gate

pattern := `^\w+\.example\.com$`

allow if regex.match(pattern, input.host)
