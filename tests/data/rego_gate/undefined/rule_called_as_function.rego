package gate

admin if input.role == "admin"

allow if admin(input.user)
