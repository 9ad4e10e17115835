-- staging: which of the day's rows break a schema rule, by file and row (narrow: the joins that drop them use it).
with invalid as (

    select * from stg_invalid

),

final as (

    select source_file, source_row
    from invalid

)

select * from final
