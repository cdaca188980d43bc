package gate

allow if data.config.enabled
