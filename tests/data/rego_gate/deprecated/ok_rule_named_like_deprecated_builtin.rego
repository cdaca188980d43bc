package gate

any_denied if input.denied

allow if not any_denied
