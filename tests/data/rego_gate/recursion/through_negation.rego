package gate

allow if not deny

deny if not allow
