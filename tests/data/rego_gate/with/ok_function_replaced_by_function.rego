package gate

check(u) if u.admin

mock_check(_) := true

inner if check(input.user)

allow if inner with check as mock_check
