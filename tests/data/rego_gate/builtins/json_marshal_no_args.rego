package gate

s := json.marshal()
