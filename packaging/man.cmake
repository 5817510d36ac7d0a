# Writes sluice(1) with help2man: the command's --help, then each subcommand's as a section.
# cmake -DSLUICE=... -DHELP2MAN=... -DVERSION=... -DOUTPUT=....1.gz -P man.cmake
get_filename_component(dir ${OUTPUT} DIRECTORY)
set(include ${dir}/sluice.h2m)
set(text "[DESCRIPTION]\nSluice answers, per request, whether it may pass. See /usr/share/doc/sluice/.\n")
foreach(sub serve validate version admin)
  execute_process(COMMAND ${SLUICE} ${sub} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sluice ${sub} --help failed")
  endif()
  # help2man's include format: a line starting with '[' opens a section; indent to keep as is.
  string(REGEX REPLACE "\n" "\n  " help "  ${help}")
  string(APPEND text "[COMMAND: ${sub}]\n.nf\n${help}\n.fi\n")
endforeach()
# (A line that starts with '/' would be a placement pattern to help2man.)
string(APPEND text "[FILES]\n.TP\n.I /etc/sluice/sluice.yaml\nthe server config\n"
                   ".TP\n.I /etc/sluice/rules/\nrules files, reloaded when they change\n"
                   ".TP\n.I /etc/default/sluice\nthe service's environment (SLUICE_ADMIN_TOKEN)\n"
                   ".TP\n.I /var/lib/sluice/\nthe rules database\n")
file(WRITE ${include} "${text}")
set(page ${dir}/sluice.1)
execute_process(
  COMMAND ${HELP2MAN} --no-info --no-discard-stderr --version-string=${VERSION}
          --name=distributed\ rate\ limiter --section=1 --include=${include} --output=${page} ${SLUICE}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "help2man failed")
endif()
execute_process(COMMAND gzip -9nf ${page} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gzip failed")
endif()
