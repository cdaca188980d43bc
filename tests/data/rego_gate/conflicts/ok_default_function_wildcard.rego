package gate

default allowed(_) := false

allowed(u) if u.admin
