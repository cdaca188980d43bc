package gate

shout := upper(count(input.users))
