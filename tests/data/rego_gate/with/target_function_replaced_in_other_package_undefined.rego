package gate

inner if data.lib.check(input)

allow if inner with data.lib.check as mock
