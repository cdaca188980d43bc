package gate

roles contains "admin"

roles.admin := true
