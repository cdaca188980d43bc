package gate

deny contains if input.bad
