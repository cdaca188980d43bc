package gate

cfg := input.cfg

level := cfg.level
