package gate

import rego.v1

roles contains "admin" if input.user.admin

roles contains "viewer"

can_edit if "admin" in roles

labels := {"a": 1} if input.a else := {}
