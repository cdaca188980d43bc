package gate

msg := concat(" ", ["users:", format_int(count(input.users), 10)])
