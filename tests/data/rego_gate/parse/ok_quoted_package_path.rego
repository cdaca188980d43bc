package gate["my-policy"]

allow if true
