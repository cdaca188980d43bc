package gate

msg := sprintf("%d workers for %s", [5, input.user])
