package gate

import input.request.user as user

allow if user.name == "alice"
