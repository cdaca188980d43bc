package gate

check(u) if u.admin

mock := true

inner if check(input.user)

allow if inner with check as mock
