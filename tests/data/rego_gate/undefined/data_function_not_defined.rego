package gate

allow if data.x.f(1)
