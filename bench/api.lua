-- wrk script: POST /api/v1.0/invitations with a new address per request.
-- Arguments: <api key>
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  key = args[1]
  counter = 0
  run = tostring(os.time())
end

function request()
  counter = counter + 1
  local body = '{"invitedUserEmailAddress":"a' .. run .. 't' .. tid .. 'n' .. counter ..
    '@partner.test","inviteRedirectUrl":"https://app.partner.test/","sendInvitationMessage":true}'
  return wrk.format("POST", "/api/v1.0/invitations", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }, body)
end
