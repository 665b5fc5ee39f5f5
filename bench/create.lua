-- wrk script: POST the admin invite form with a new address per request.
-- Arguments: <path> <cookie header> <csrf token>
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  path, cookie, token = args[1], args[2], args[3]
  counter = 0
  run = tostring(os.time())
end

function request()
  counter = counter + 1
  local body = "csrf_token=" .. token .. "&email=b" .. run .. "t" .. tid .. "n" .. counter ..
    "%40partner.test&display_name=Bench+Guest&message=Hello&user_type=Guest&send_email=on"
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = cookie,
  }, body)
end
