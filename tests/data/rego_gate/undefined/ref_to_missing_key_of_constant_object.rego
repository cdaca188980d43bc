package gate

cfg := {"mode": "strict"}

level := cfg.level
