package gate

msg := sprintf("%d workers", 5)
